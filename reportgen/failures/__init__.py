"""Where the model fails, on numpy arrays (no report blocks here): failure slices in feature space
(:mod:`.slices`), duplicate images inside a set and against a reference set (:mod:`.duplicates`), likely label
errors by confident learning (:mod:`.labelnoise`), and the reference set's feature pass (:mod:`.reference`)."""
