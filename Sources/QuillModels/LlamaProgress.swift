import QuillKernels

extension LlamaModel {
    /// Parallel regions the model's kernels have run so far (it grows by the same amount for every
    /// decoded token). Lets a caller check that a generation on another thread has really stopped, e.g.
    /// after cancelling a stream, without timing anything.
    public var kernelRegionsRun: Int { pool.regionsStarted }
}
