import Testing

@Test func placeholderQuillTokenizersTests() { #expect(Bool(true)) }
