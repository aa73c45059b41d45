"""analysis package of the transfer kit: logs -> tidy CSV per run -> results table -> figures and tables.

- parse_log: one streaming parser for 2014 and modern Caffe logs (plain or .gz), merge of
  restarted runs, BVLC-compatible CSVs, the paper's score (mean of the 10 best test accuracies).
- glog: glog line prefixes and the clock that makes their year-less stamps monotonic seconds.
- results: a split's run folders -> results rows and results.csv; analyze_split (for `make plots`).
- original: the authors' published results/ folder -> the same results table (import-original); their
  run names are read by kitcore.authors_names (generators/authors.py reads the same).
- rules: the one set of rules the figures, Table 1 and the findings read rows by: which rows are usable,
  their paper group (base, BnB, BnB+, AnB, AnB+), the baseline, Figure 3's pieces and their bases.
- plots, figures, figure3, table1: Figure 2 (top, bottom), Figure 3, Table 1, training curves,
  all drawn from results tables alone (plus per-run curve CSVs); the authors' runs as an overlay;
  each figure's numbers beside it as <stem>.csv.
- findings: the paper's controls (bases on their plateau, B1B/B1B+ against baseB, the score after the last
  lr step) and its five findings, measured per seed, with verdicts (findings.md, Figure 2 bottom).
- filters: conv1 filters of a .caffemodel as an image grid.
- commands: the CLI subcommands import-original, figures, table1, filters.

It reads only logs and run metadata (run.json, result.json, the run's solver.prototxt as text); it never
imports generators/ or data_prep/.
"""
