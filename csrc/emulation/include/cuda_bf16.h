// Emulated build only (-Icsrc/emulation/include): the CUDA header of this
// name, as far as localgrad uses it, from the host emulation.
#pragma once
#include "../cuda_emulation.h"
