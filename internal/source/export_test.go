package source

// InlineMax is inlineMax, for the tests of package source_test.
const InlineMax = inlineMax
