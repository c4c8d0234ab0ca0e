// The smallest xgrad program: y = x^2 + 3x at x = 2, and dy/dx by backward.
#include <fmt/format.h>

#include "xgrad.hpp"

int main() {
  xgrad::Tensor x = xgrad::scalar(2.0, xgrad::DType::Float64).requires_grad_();
  xgrad::Tensor y = x * x + 3.0 * x;
  y.backward();
  fmt::print("y = {}, dy/dx = {} (expected 10 and 7)\n", y.item(), x.grad().item());
}
