"""The ternary table-lookup matmul (TLMM) engine."""
