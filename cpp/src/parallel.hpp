// A minimal parallel loop over independent tasks with std::thread. Private to the core.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dfmr::detail {

inline unsigned resolve_threads(int n_threads) {
  if (n_threads > 0) return static_cast<unsigned>(n_threads);
  return std::max(1u, std::thread::hardware_concurrency());
}

// Number of workers parallel_for will use for n_tasks tasks.
inline std::size_t worker_count(std::size_t n_tasks, int n_threads) {
  return std::max<std::size_t>(1, std::min<std::size_t>(resolve_threads(n_threads), n_tasks));
}

// Calls body(t, w) for t in [0, n_tasks) on worker_count(n_tasks, n_threads) workers, w being
// the worker's index (for per-worker scratch space owned by the caller). Tasks are handed out
// dynamically because their costs differ. The first exception thrown by a task, or by the
// creation of a thread, is rethrown in the caller after every started thread has stopped.
template <class Body>
void parallel_for(std::size_t n_tasks, int n_threads, Body&& body) {
  const std::size_t workers = worker_count(n_tasks, n_threads);
  if (workers <= 1) {
    for (std::size_t t = 0; t < n_tasks; ++t) body(t, std::size_t{0});
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto fail = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!error) error = e;
    next.store(n_tasks);
  };
  auto work = [&](std::size_t w) {
    for (std::size_t t; (t = next.fetch_add(1)) < n_tasks;) {
      try {
        body(t, w);
      } catch (...) {
        fail(std::current_exception());
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  try {
    for (std::size_t w = 1; w < workers; ++w) pool.emplace_back(work, w);
  } catch (...) {
    fail(std::current_exception());
  }
  work(0);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace dfmr::detail
