//go:build !race

package pipeline

// raceEnabled: the race detector's sync.Pool drops items at random, so
// allocation budgets do not hold.
const raceEnabled = false
