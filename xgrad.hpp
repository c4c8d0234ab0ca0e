// The whole public API: #include <xgrad/xgrad.hpp>
#pragma once

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"
#include "core/threading.hpp"

#include "autograd/backward.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"
