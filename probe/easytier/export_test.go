package easytier

// StampKeeperFDs is how many descriptors the receive-stamping keeper
// holds (0 or 1), for tests that count descriptors.
func StampKeeperFDs() int {
	if keeperOpen() {
		return 1
	}
	return 0
}
