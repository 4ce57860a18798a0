package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/stent-dev/stent/api"
	"github.com/stent-dev/stent/server/web"
	"github.com/stent-dev/stent/store"
)

// uiSessions keeps the dashboard's sessions in the server's store, so a
// restart (or a standby taking over) keeps people logged in; revoking a
// token deletes its sessions (store.Tx.RevokeAdminToken).
type uiSessions struct{ s *Server }

func (u uiSessions) SaveSession(ctx context.Context, ss *web.StoredSession) error {
	who, err := json.Marshal(ss.Principal)
	if err != nil {
		return err
	}
	row := &store.UISession{ID: ss.ID, TokenID: ss.TokenID, Sealed: ss.Sealed, Principal: string(who), CreatedAt: ss.CreatedAt, ExpiresAt: ss.ExpiresAt}
	return u.s.w.do(ctx, func(tx *store.Tx) error { return tx.PutUISession(ctx, row, u.s.now().UTC(), web.MaxSessions) })
}

func (u uiSessions) LoadSession(ctx context.Context, id string) (*web.StoredSession, error) {
	row, err := u.s.st.UISession(ctx, id, u.s.now().UTC())
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var who api.Principal
	if err := json.Unmarshal([]byte(row.Principal), &who); err != nil {
		return nil, fmt.Errorf("session %s: %w", id, err)
	}
	return &web.StoredSession{ID: row.ID, TokenID: row.TokenID, Sealed: row.Sealed, Principal: who, CreatedAt: row.CreatedAt, ExpiresAt: row.ExpiresAt}, nil
}

func (u uiSessions) DeleteSession(ctx context.Context, id string) error {
	return u.s.w.do(ctx, func(tx *store.Tx) error { return tx.DeleteUISession(ctx, id) })
}
