"""telemetry seed, collisions and steps as 64-bit integers

The API accepts any int64 there (robots' seeds are often 32-bit unsigned), but PostgreSQL's
INTEGER holds only int32: a seed of 2**31 was a 500 on PostgreSQL and stored on SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 16:35:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None
COLUMNS = ('seed', 'collisions', 'steps')


def upgrade() -> None:
    with op.batch_alter_table('telemetry_episodes') as batch:  # SQLite: the table is copied
        for name in COLUMNS:
            batch.alter_column(name, existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('telemetry_episodes') as batch:
        for name in COLUMNS:
            batch.alter_column(name, existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=False)
