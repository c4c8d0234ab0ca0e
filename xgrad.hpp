// The whole public API: #include <xgrad/xgrad.hpp>
#pragma once

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "core/format.hpp"
#include "core/npy.hpp"
#include "core/npz.hpp"
#include "core/padding.hpp"
#include "core/precision.hpp"
#include "core/random.hpp"
#include "core/shape.hpp"
#include "core/tensor.hpp"

#include "autograd/anomaly.hpp"
#include "autograd/backward.hpp"
#include "autograd/conv.hpp"
#include "autograd/grad_mode.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/node.hpp"
#include "autograd/ops.hpp"

#include "layers/conv_spec.hpp"
#include "layers/dtypes.hpp"

#include "optim/alias.hpp"
#include "optim/optimizer.hpp"
#include "optim/schedule.hpp"
#include "optim/transformation.hpp"
#include "optim/transforms.hpp"

#include "data/data_loader.hpp"
#include "data/dataset.hpp"
#include "data/fashion_mnist.hpp"
#include "data/idx.hpp"

#include "distributed/distributed.hpp"
