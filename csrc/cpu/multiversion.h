// SMARTFRZ_MULTIVERSION: compile a hot CPU function twice, for AVX2 and for any x86-64, and pick one at
// load time (an ifunc; ELF with glibc only). AVX2 without FMA: the same operations in the same order, so
// both clones give bit-identical results.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__)
#define SMARTFRZ_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define SMARTFRZ_MULTIVERSION
#endif
