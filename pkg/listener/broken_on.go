//go:build orgperm_broken

package listener

// ignoreInvalidations, in a build with the orgperm_broken tag only, makes
// the listener drop every invalidation payload while proofs still flow:
// a deliberately broken build, for showing that the consistency soak's
// staleness detector catches lost notifications
// (go run -tags orgperm_broken ./cmd/soak). Never use it otherwise.
const ignoreInvalidations = true
