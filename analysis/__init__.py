"""analysis package of the transfer kit: logs -> tidy CSV per run -> results table -> Figure 2.

- parse_log: one streaming parser for 2014 and modern Caffe logs (plain or .gz), merge of
  restarted runs, BVLC-compatible CSVs, the paper's score (mean of the 10 best test accuracies).
- glog: glog line prefixes and the clock that makes their year-less stamps monotonic seconds.
- results: a split's run folders -> results rows and results.csv; analyze_split (for `make plots`).
- plots: the paper's Figure 2 (top-1 accuracy against n) as PNG and PDF.

It reads only logs and run metadata (run.json, result.json); it never imports generators/ or data_prep/.
"""
