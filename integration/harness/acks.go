package harness

import (
	"maps"
	"slices"
	"sync"
)

// AckSet records the allocation IDs that a coordinator acknowledged to a
// scenario's clients, and those the test released since. It is safe for
// concurrent use by the scenario's client goroutines.
type AckSet struct {
	// mu guards the fields below.
	mu       sync.Mutex
	acked    map[string]struct{}
	released map[string]struct{}
}

// NewAckSet returns an empty set.
func NewAckSet() *AckSet {
	return &AckSet{
		acked:    make(map[string]struct{}),
		released: make(map[string]struct{}),
	}
}

// Ack records allocation IDs that a coordinator acknowledged.
func (a *AckSet) Ack(ids ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range ids {
		a.acked[id] = struct{}{}
	}
}

// Release records allocation IDs whose release a coordinator
// acknowledged.
func (a *AckSet) Release(ids ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, id := range ids {
		a.released[id] = struct{}{}
	}
}

// Acked returns every acknowledged ID, sorted, released ones included.
func (a *AckSet) Acked() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.acked))
}

// Released returns every released ID, sorted.
func (a *AckSet) Released() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.released))
}

// Held returns the acknowledged IDs not released, sorted: the allocations
// that must still exist.
func (a *AckSet) Held() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var held []string
	for id := range a.acked {
		if _, ok := a.released[id]; !ok {
			held = append(held, id)
		}
	}
	slices.Sort(held)
	return held
}

// Len returns the number of acknowledged IDs.
func (a *AckSet) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.acked)
}
