#define KERN_LEVEL armv8_0
#include "kern/impl/level.inc"
