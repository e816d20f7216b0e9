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

// Calls body(t) for t in [0, n_tasks) on up to n_threads threads; tasks are handed out
// dynamically because their costs differ. The first exception thrown by a task is
// rethrown in the caller after all threads have stopped.
template <class Body>
void parallel_for(std::size_t n_tasks, int n_threads, Body&& body) {
  const std::size_t workers = std::min<std::size_t>(resolve_threads(n_threads), n_tasks);
  if (workers <= 1) {
    for (std::size_t t = 0; t < n_tasks; ++t) body(t);
    return;
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (std::size_t t; (t = next.fetch_add(1)) < n_tasks;) {
      try {
        body(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        next.store(n_tasks);
      }
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (std::size_t w = 1; w < workers; ++w) pool.emplace_back(work);
  work();
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace dfmr::detail
