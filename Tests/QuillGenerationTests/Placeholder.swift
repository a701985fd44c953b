import Testing

@Test func placeholderQuillGenerationTests() { #expect(Bool(true)) }
