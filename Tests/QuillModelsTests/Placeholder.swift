import Testing

@Test func placeholderQuillModelsTests() { #expect(Bool(true)) }
