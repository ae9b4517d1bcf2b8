//go:build !orgperm_broken

package listener

// ignoreInvalidations is false in every real build; see broken_on.go.
const ignoreInvalidations = false
