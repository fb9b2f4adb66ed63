#define KERN_LEVEL armv8_6_i8mm
#include "kern/impl/level.inc"
