// Stages: the pure, CPU-bound steps of the pipeline (notification decoding, object classification,
// streaming gunzip, strict record splitting, event building). No journal and no network here; the
// Engine feeds them bytes and commits what they produce.
