// A minimal check macro for the runtime's C++ unit tests (ctest runs each test program; a
// nonzero exit is a failure).
#pragma once

#include <cstdio>
#include <cstdlib>

static int g_failures = 0;

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                        \
    }                                                                      \
  } while (0)

#define TEST_RESULT() (g_failures == 0 ? (std::printf("ok\n"), 0) : 1)
