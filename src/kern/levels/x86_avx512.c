#define KERN_LEVEL avx512
#include "kern/impl/level.inc"
