#define KERN_LEVEL sse2
#include "kern/impl/level.inc"
