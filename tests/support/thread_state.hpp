#pragma once
// Telling that a thread is blocked: the tests that need N threads waiting on one singleflight
// future read each thread's scheduler state from /proc (Linux only, as the tests are).

#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace ormcache_test {

inline pid_t current_tid() {
    return static_cast<pid_t>(::syscall(SYS_gettid));
}

/// The scheduler state of one of this process's threads ('R' running, 'S' sleeping, ...).
inline char thread_state(pid_t tid) {
    std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size())
        return '?';
    return stat[paren + 2];
}

/// Waits until every thread in `tids` is asleep, twice in a row a little apart. Used once the
/// threads have passed their last observable step (their cache read) and can only block on a
/// singleflight future: then "asleep" means "waiting on the flight". A poll on a condition, not
/// a sleep standing in for one.
/// Gives up early (false) once `give_up` says so (e.g. the thread finished without waiting).
inline bool wait_all_asleep(
    const std::vector<pid_t>& tids, const std::function<bool()>& give_up = [] { return false; },
    std::chrono::seconds timeout = std::chrono::seconds{60}) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int streak = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        if (give_up())
            return false;
        bool all = true;
        for (pid_t tid : tids)
            all = all && thread_state(tid) == 'S';
        streak = all ? streak + 1 : 0;
        if (streak >= 2)
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds{1});
    }
    return false;
}

}  // namespace ormcache_test
