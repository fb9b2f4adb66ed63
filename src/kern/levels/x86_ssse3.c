#define KERN_LEVEL ssse3
#include "kern/impl/level.inc"
