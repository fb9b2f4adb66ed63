#define KERN_LEVEL avx2
#include "kern/impl/level.inc"
