// Intentionally empty: importability of COpenBLAS.AVX512VNNI is the feature test (see module.modulemap).
#pragma once
