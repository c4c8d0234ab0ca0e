// Typed exceptions. Every message names the operation (and, inside a model, the
// module path) and the shapes involved, so a user can fix the call from the text.
#pragma once

#include <stdexcept>
#include <string>

namespace xgrad {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ShapeError : public Error { public: using Error::Error; };
class DTypeError : public Error { public: using Error::Error; };
class ValueError : public Error { public: using Error::Error; };
class IOError : public Error { public: using Error::Error; };
class AutogradError : public Error { public: using Error::Error; };
// Something upstream (Flax/JAX) leaves undefined that xgrad also does not implement.
class NotImplementedError : public Error { public: using Error::Error; };

}  // namespace xgrad
