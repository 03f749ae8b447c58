from . import scs_bench_floor_row
