// Emulated build only (-Icsrc/emulation/include): what nvcc gives every .cu
// file (runtime API plus device code: built-in variables, barriers, warp
// shuffles, atomics, math), from the host emulation.
#pragma once
#define LOCALGRAD_EMULATION_DEVICE_CODE
#include "../cuda_emulation.h"
