"""Parameter studies behind ``ilrma sweep``: the grid (:mod:`.grid`), one run (:mod:`.run`),
the run log (:mod:`.log`) and the summary (:mod:`.summary`). No click and no printing."""
