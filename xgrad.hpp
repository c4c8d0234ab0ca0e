// The whole public API: #include <xgrad/xgrad.hpp>
#pragma once

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/random.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"

#include "autograd/backward.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"

#include "optim/alias.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedule.hpp"
#include "optim/transformation.hpp"
#include "optim/transforms.hpp"
