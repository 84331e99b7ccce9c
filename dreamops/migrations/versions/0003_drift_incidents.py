"""drift incidents

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 16:28:53.999325
"""
from alembic import op
import sqlalchemy as sa
import dreamops.db


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('drift_incidents',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('warehouse_id', sa.String(length=64), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('version', sa.String(length=16), nullable=False),
    sa.Column('fallback_version', sa.String(length=16), nullable=True),
    sa.Column('signals', sa.JSON(), nullable=False),
    sa.Column('detected_at', dreamops.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', dreamops.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('drift_incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_drift_incidents_warehouse_id'), ['warehouse_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('drift_incidents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drift_incidents_warehouse_id'))

    op.drop_table('drift_incidents')
