// Compiled against an *installed* xgrad (scripts/check-install), the way a user's program is:
//   g++ -std=c++20 consumer.cpp $(pkg-config --cflags --libs xgrad)
#include <cstdio>

#include <xgrad/xgrad.hpp>

int main() {
  xgrad::Tensor x = xgrad::from_vector({1.0, 2.0, 3.0}, {3}, xgrad::DType::Float64).requires_grad_();
  xgrad::Tensor loss = (x * x).sum();
  loss.backward();
  const auto g = x.grad().to_vector();  // d/dx sum(x^2) = 2x
  const bool ok = g == std::vector<double>{2.0, 4.0, 6.0};
  std::printf("installed xgrad: loss %g, grad [%g, %g, %g] -> %s\n", loss.item(), g[0], g[1], g[2], ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
