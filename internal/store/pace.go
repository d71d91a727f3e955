package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// AcquirePace is the shared half of Ironic's [ipmi] min_command_interval
// for deployments with several processes: it waits until no process
// holds bmc and interval has passed since its last command ended, then
// holds it for at most lease (a process that dies holding it delays the
// BMC by lease, no more). It returns the token ReleasePace needs.
func (s *sqlStore) AcquirePace(ctx context.Context, bmc string, interval, lease time.Duration) (string, error) {
	token := uuid.NewString()
	for {
		now := time.Now()
		res, err := s.db.ExecContext(ctx, s.d.rebind(`UPDATE bmc_pace SET holder = ?, busy_until = ?
			WHERE bmc = ? AND busy_until < ? AND last_end <= ?`),
			token, now.Add(lease).UnixNano(), bmc, now.UnixNano(), now.Add(-interval).UnixNano())
		if err != nil {
			s.abandonPace(ctx, bmc, token)
			return "", fmt.Errorf("take the pace of BMC %s: %w", bmc, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return token, nil
		}
		res, err = s.db.ExecContext(ctx, s.d.rebind(`INSERT INTO bmc_pace (bmc, holder, busy_until, last_end)
			VALUES (?, ?, ?, 0) ON CONFLICT (bmc) DO NOTHING`), bmc, token, now.Add(lease).UnixNano())
		if err != nil {
			s.abandonPace(ctx, bmc, token)
			return "", fmt.Errorf("take the pace of BMC %s: %w", bmc, err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return token, nil
		}
		var busyUntil, lastEnd int64
		err = s.db.QueryRowContext(ctx, s.d.rebind(`SELECT busy_until, last_end FROM bmc_pace WHERE bmc = ?`), bmc).Scan(&busyUntil, &lastEnd)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return "", fmt.Errorf("read the pace of BMC %s: %w", bmc, err)
		}
		wait := time.Until(time.Unix(0, max(busyUntil, lastEnd+int64(interval))))
		// Poll at least every 250 ms: the holder may finish early.
		wait = min(max(wait, 5*time.Millisecond), 250*time.Millisecond)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
	}
}

// abandonPace gives back a hold a failed AcquirePace may have taken all
// the same: a statement can commit while its context is being cancelled,
// and its caller, told it failed, never releases it; the BMC would wait
// out the lease. The last command's end is left as it was: none was sent.
func (s *sqlStore) abandonPace(ctx context.Context, bmc, token string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.db.ExecContext(ctx, s.d.rebind(`UPDATE bmc_pace SET busy_until = 0 WHERE bmc = ? AND holder = ?`), bmc, token)
}

// ReleasePace records the end of the command that holds bmc under token.
// A hold that expired and was taken by another process is left alone.
func (s *sqlStore) ReleasePace(ctx context.Context, bmc, token string) error {
	_, err := s.db.ExecContext(ctx, s.d.rebind(`UPDATE bmc_pace SET busy_until = 0, last_end = ? WHERE bmc = ? AND holder = ?`),
		time.Now().UnixNano(), bmc, token)
	if err != nil {
		return fmt.Errorf("release the pace of BMC %s: %w", bmc, err)
	}
	return nil
}
