// dfmr C++ core: Gaussian mixture L2 distances and KL mixture reduction.
#pragma once

#include "dfmr/aggregate.hpp"
#include "dfmr/covariance.hpp"
#include "dfmr/distance.hpp"
#include "dfmr/mixture.hpp"
#include "dfmr/reduction.hpp"
