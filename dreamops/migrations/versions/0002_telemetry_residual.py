"""telemetry residual

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 16:28:18.395676
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('telemetry_episodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('residual', sa.Double(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('telemetry_episodes', schema=None) as batch_op:
        batch_op.drop_column('residual')

