#!/usr/bin/env bash
# expect_asan_report.sh PROGRAM: passes when PROGRAM fails with an AddressSanitizer
# report of a use of freed (or poisoned) heap memory, fails otherwise.
report=$("$1" 2>&1 >/dev/null) && { echo "expected an AddressSanitizer report, the program exited 0"; exit 1; }
if grep -Eq "AddressSanitizer: (heap-use-after-free|use-after-poison)" <<<"$report"; then
  echo "ASan reported it: $(grep -Eo 'AddressSanitizer: [a-z-]+' <<<"$report" | head -1)"
  exit 0
fi
echo "the program failed without the expected report:"
echo "$report" | head -20
exit 1
