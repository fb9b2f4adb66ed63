#define KERN_LEVEL avx512fp16
#include "kern/impl/level.inc"
