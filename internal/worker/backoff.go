package worker

import "time"

// Backoff spaces out the retries of a failing message by its receive count:
// 2 s, 4 s, 8 s ... up to 5 min, so a dependency that is down is not hammered
// while the message works its way towards the dead-letter queue.
func Backoff(receiveCount int) time.Duration {
	return min(time.Duration(1<<min(max(receiveCount, 1), 9))*time.Second, 5*time.Minute)
}
