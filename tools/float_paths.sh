#!/usr/bin/env bash
# The cross-CPU gate: run a command once per CPU float path torch can take on this machine.
#
# Floats differ in their last digits between CPUs because torch picks its own vectorised
# kernels by instruction set (ATEN_CPU_CAPABILITY) and MKL (matrix products) and oneDNN
# (convolutions) pick theirs. A claim tuned on one CPU can fail on another; forcing each
# path here stands in for the other CPUs CI and learners have. Each profile caps all three
# libraries together:
#   native   what this CPU picks by itself
#   avx2     ATEN avx2,    MKL AVX2,   oneDNN AVX2   (run where the CPU has AVX-512)
#   default  ATEN default, MKL SSE4_2, oneDNN SSE41  (plain scalar ATen kernels)
#
# Usage: tools/float_paths.sh PYTHON COMMAND...   (PROFILES="native default" to choose)
# Every profile runs even if an earlier one fails; the exit status is non-zero if any failed.
set -uo pipefail
python=$1; shift

native=$("$python" -c 'import torch; print(torch.backends.cpu.get_cpu_capability().lower())')
if [[ -z "${PROFILES:-}" ]]; then
    PROFILES="native"
    [[ "$native" == avx512* ]] && PROFILES+=" avx2"
    [[ "$native" != "default" ]] && PROFILES+=" default"
fi

profile_env() {
    case "$1" in
        native)  echo "" ;;
        avx512)  echo "ATEN_CPU_CAPABILITY=avx512 MKL_ENABLE_INSTRUCTIONS=AVX512 ONEDNN_MAX_CPU_ISA=AVX512_CORE" ;;
        avx2)    echo "ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2" ;;
        default) echo "ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41" ;;
        *) echo "float_paths: unknown profile '$1' (native, avx512, avx2, default)" >&2; return 1 ;;
    esac
}

failed=()
for profile in $PROFILES; do
    settings=$(profile_env "$profile") || exit 2
    echo "== float path: $profile (this CPU: $native) ${settings:+[$settings]}"
    start=$(date +%s)
    if ! env $settings "$@"; then
        failed+=("$profile")
    fi
    echo "== float path $profile: $(( $(date +%s) - start )) s"
done
if (( ${#failed[@]} )); then
    echo "float paths FAILED: ${failed[*]} (of: $PROFILES)" >&2
    exit 1
fi
echo "float paths passed: $PROFILES"
