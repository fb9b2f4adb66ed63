#define KERN_LEVEL avx
#include "kern/impl/level.inc"
