"""telemetry model and success_prob

`model`: the family whose robot reported the episode (version numbers repeat across registered
models: a drift check of one family must not read another's episodes); rows written before it
were the default family's. `success_prob`: the success head's predicted probability, for
pick-vla's calibration signal.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('telemetry_episodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('success_prob', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('model', sa.String(length=256), nullable=False, server_default='carracing-vmc'))


def downgrade() -> None:
    with op.batch_alter_table('telemetry_episodes', schema=None) as batch_op:
        batch_op.drop_column('model')
        batch_op.drop_column('success_prob')
