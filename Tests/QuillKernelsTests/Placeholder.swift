import Testing

@Test func placeholderQuillKernelsTests() { #expect(Bool(true)) }
