// One SKU position; its own module so that the index and the partition share it.

/** One SKU position: a product in a warehouse, owned by one partition. */
export class Position {
  available = 0;
  reserved = 0;
  received = 0;
  adjusted = 0;
  fulfilled = 0;
  constructor(
    readonly productId: string,
    readonly warehouseId: string,
    /** Its number in the partition (0..), by which open holds refer to it. */
    readonly index: number,
  ) {}
}
