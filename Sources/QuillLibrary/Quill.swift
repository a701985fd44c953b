// `import Quill`: the whole library in one import — models and text generation (QuillModels), audio (QuillAudio),
// token-level generation, KV memory and search (QuillGeneration), tokenizers and kernels.
@_exported import QuillAudio
@_exported import QuillGeneration
@_exported import QuillKernels
@_exported import QuillModels
@_exported import QuillTokenizers
