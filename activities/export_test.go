package activities

// SetPageBounds shrinks a page's store chunk and candidate bound for a
// test, until restore is called.
func SetPageBounds(chunk, candidates int) (restore func()) {
	oldChunk, oldCandidates := syncChunk, pageCandidates
	syncChunk, pageCandidates = chunk, candidates
	return func() { syncChunk, pageCandidates = oldChunk, oldCandidates }
}
