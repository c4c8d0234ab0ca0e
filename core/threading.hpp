// The number of threads xgrad's own parallel kernels use (OpenMP), kept in step
// with OpenBLAS's pool so the two never oversubscribe the cores.
#pragma once

namespace xgrad {

// Defaults to the XGRAD_NUM_THREADS environment variable if set (a positive integer),
// else std::thread::hardware_concurrency(). The first call also applies the value to OpenBLAS.
int num_threads();

// Sets the thread count for xgrad's kernels and for OpenBLAS (n < 1 is treated as 1).
void set_num_threads(int n);

}  // namespace xgrad
