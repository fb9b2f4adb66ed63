#define KERN_LEVEL armv8_2_dotprod
#include "kern/impl/level.inc"
