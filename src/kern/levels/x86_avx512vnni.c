#define KERN_LEVEL avx512vnni
#include "kern/impl/level.inc"
