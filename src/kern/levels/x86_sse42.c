#define KERN_LEVEL sse42
#include "kern/impl/level.inc"
